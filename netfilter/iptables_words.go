package netfilter

import (
	"errors"
	"strings"
)

// word is one argument of a rule line after quote processing.
type word struct {
	s string
	// quoted is true when any part of the word was inside double quotes:
	// such a word is always a value, never an option or "!".
	quoted bool
}

var errUnterminatedQuote = errors.New("unterminated double quote (a quote opened and never closed on this line)")

// splitWords splits a rule line into words the way iptables-restore does:
// blanks separate words; a double quote opens a quoted part in which blanks
// are kept and a backslash takes the next character literally; the closing
// quote ends the word. Outside quotes a backslash is an ordinary character.
// Words without quotes are substrings of line (no copy). The result is
// appended to dst.
func splitWords(line string, dst []word) ([]word, error) {
	i, n := 0, len(line)
	for i < n {
		for i < n && isBlank(line[i]) {
			i++
		}
		if i >= n {
			break
		}
		start := i
		for i < n && !isBlank(line[i]) && line[i] != '"' {
			i++
		}
		if i >= n || line[i] != '"' {
			dst = append(dst, word{s: line[start:i]})
			continue
		}
		// A word that is just one quoted part without escapes, the common
		// case for comments: take it as a substring.
		if i == start {
			if end := strings.IndexByte(line[i+1:], '"'); end >= 0 {
				inner := line[i+1 : i+1+end]
				after := i + 2 + end
				if strings.IndexByte(inner, '\\') < 0 && (after >= n || isBlank(line[after])) {
					dst = append(dst, word{s: inner, quoted: true})
					i = after
					continue
				}
			}
		}
		// Slow path: the word has escapes or several parts.
		var b strings.Builder
		b.WriteString(line[start:i])
		i++ // opening quote
		closed := false
		for i < n {
			c := line[i]
			if c == '\\' && i+1 < n {
				b.WriteByte(line[i+1])
				i += 2
				continue
			}
			if c == '"' {
				i++
				closed = true
				break
			}
			b.WriteByte(c)
			i++
		}
		if !closed {
			return dst, errUnterminatedQuote
		}
		dst = append(dst, word{s: b.String(), quoted: true})
	}
	return dst, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// quoteWord renders s the way iptables-save prints strings (comments, log
// prefixes): bare when it is made only of letters, digits, '_' and '-',
// otherwise in double quotes, with each double quote, backslash and single
// quote escaped by a backslash.
func quoteWord(s string) string {
	bare := s != ""
	for i := 0; i < len(s) && bare; i++ {
		c := s[i]
		bare = c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
	}
	if bare {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// QuoteWord renders s as iptables-save prints a string argument (see
// quoteWord); renderers use it so their output matches iptables-save's.
func QuoteWord(s string) string { return quoteWord(s) }

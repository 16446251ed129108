package lab

import (
	"bytes"
	"io"
	"strings"
)

func stringReader(s string) io.Reader { return strings.NewReader(s) }

// limitedBuffer keeps at most 1 MiB of a command's output.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 1<<20 - b.Len(); room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func (b *limitedBuffer) String() string { return strings.TrimSpace(b.Buffer.String()) }

func joinArgv(argv []string) string { return strings.Join(argv, " ") }

package lab

import (
	"fmt"
	"io"
	"time"
)

// progress prints numbered steps with their duration:
//
//	[2/7] underlay: namespace twill-underlay, bridge br0 192.168.77.1/24 ... ok (4ms)
type progress struct {
	w     io.Writer
	n     int
	total int
}

// step runs fn as the next step and reports how it went.
func (p *progress) step(title string, fn func() error) error {
	p.n++
	fmt.Fprintf(p.w, "[%d/%d] %s ... ", p.n, p.total, title)
	start := time.Now()
	err := fn()
	if err != nil {
		fmt.Fprintf(p.w, "FAILED (%s)\n", since(start))
		return err
	}
	fmt.Fprintf(p.w, "ok (%s)\n", since(start))
	return nil
}

// since formats the time since start for people: 4ms, 1.2s.
func since(start time.Time) string {
	d := time.Since(start)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

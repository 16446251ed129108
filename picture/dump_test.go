package picture

import (
	"os"
	"testing"
)

func TestDumpTmp(t *testing.T) {
	for _, c := range traceCases {
		f, _ := os.Create("/tmp/pic-" + c.name + ".html")
		if err := WriteTraceHTML(f, c.result(t)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

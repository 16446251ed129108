package picture

import (
	"bytes"
	"encoding/base64"
	"html"
	"regexp"
	"strings"
	"testing"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nodestate"
)

func f1DoctorPage(t testing.TB) DoctorPage {
	t.Helper()
	s, err := nodestate.LoadFile(traceData + "f1-node1.json")
	if err != nil {
		t.Fatal(err)
	}
	return DoctorPage{Report: doctor.Run(s, doctor.Config{}), Snapshot: s, EmbedSnapshot: true}
}

// The embedded snapshot is the capture itself: it loads back and doctor
// finds the same thing in it.
func TestDoctorPageEmbedsSnapshot(t *testing.T) {
	page := f1DoctorPage(t)
	var b bytes.Buffer
	if err := WriteDoctorHTML(&b, page); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`href="data:application/json;base64,([^"]+)"`).FindSubmatch(b.Bytes())
	if m == nil {
		t.Fatal("no embedded snapshot link")
	}
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	s, err := nodestate.Load(bytes.NewReader(raw), "embedded")
	if err != nil {
		t.Fatal(err)
	}
	if got := doctor.Run(s, doctor.Config{}).IDs(); strings.Join(got, ",") != strings.Join(page.Report.IDs(), ",") {
		t.Errorf("doctor on the embedded snapshot: %v, on the original: %v", got, page.Report.IDs())
	}
}

// Text from a snapshot is escaped: a hostile rule comment cannot inject markup.
func TestDoctorPageEscapes(t *testing.T) {
	page := f1DoctorPage(t)
	page.EmbedSnapshot = false
	page.Report.Findings = append(page.Report.Findings, doctor.Finding{ID: "TW999", Severity: doctor.Warning, Title: `<script>alert(1)</script>`, Evidence: []string{`"><img src=x>`}})
	var b bytes.Buffer
	if err := WriteDoctorHTML(&b, page); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>alert") || strings.Contains(b.String(), "<img src=x>") {
		t.Fatal("markup from the report reached the page unescaped")
	}
}

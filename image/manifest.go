package image

import (
	"fmt"
	"regexp"
)

// manifestImage matches every reference to twill's image in a manifest.
var manifestImage = regexp.MustCompile(regexp.QuoteMeta(Repository) + `:[A-Za-z0-9_][A-Za-z0-9_.-]*`)

// RenderManifest returns deploy/twill.yaml with every reference to twill's
// image (the placeholder tag in git) replaced by ref, the image just built:
// the file a release ships. A manifest that names no twill image is an
// error.
func RenderManifest(manifest []byte, ref string) ([]byte, error) {
	if _, err := ParseRef(ref); err != nil {
		return nil, err
	}
	if !manifestImage.Match(manifest) {
		return nil, fmt.Errorf("image: the manifest names no %s:<tag> image to render", Repository)
	}
	return manifestImage.ReplaceAllLiteral(manifest, []byte(ref)), nil
}

package lab

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestDeleteNodeObjectRetries checks the retry decision of deleteNodeObject
// over a fake client: a timed-out delete that the server carried out is
// reported as done, a refusal is not retried.
func TestDeleteNodeObjectRetries(t *testing.T) {
	nodes := schema.GroupResource{Resource: "nodes"}
	cases := []struct {
		name    string
		replies []error
		calls   int
		wantErr string
	}{
		{"first try", []error{nil}, 1, ""},
		{"timeout then gone", []error{apierrors.NewTimeoutError("slow", 1), apierrors.NewNotFound(nodes, "node3")}, 2, ""},
		{"deadline then ok", []error{context.DeadlineExceeded, nil}, 2, ""},
		{"not found at once", []error{apierrors.NewNotFound(nodes, "node3")}, 1, "not found"},
		{"forbidden", []error{apierrors.NewForbidden(nodes, "node3", errors.New("no"))}, 1, "forbidden"},
		{"always slow", []error{context.DeadlineExceeded, context.DeadlineExceeded, context.DeadlineExceeded}, 3, "3 attempts failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset()
			calls := 0
			c.PrependReactor("delete", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
				err := tc.replies[min(calls, len(tc.replies)-1)]
				calls++
				return true, nil, err
			})
			err := deleteNodeObject(context.Background(), c, "node3", io.Discard)
			if calls != tc.calls {
				t.Errorf("%d delete calls, want %d", calls, tc.calls)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

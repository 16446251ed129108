package cni

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// cniError turns err into the CNI error object the runtime shows, with the
// spec's code. Already-typed CNI errors pass through.
func cniError(code uint, err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(code, err.Error(), "")
}

// nodeError classifies a ReadNode failure: a missing subnet file is
// "try again later" (the agent is starting), a broken one is a config error.
func nodeError(err error) error {
	if errors.Is(err, ErrNoSubnetFile) {
		return cniError(types.ErrTryAgainLater, err)
	}
	return cniError(types.ErrInvalidNetworkConfig, err)
}

// failf is a CNI error with a formatted message.
func failf(code uint, format string, args ...any) error {
	return types.NewError(code, fmt.Sprintf(format, args...), "")
}

//go:build !unix

package storetest

import "time"

// cpuTime is not measured here: perEvent reports no CPU time.
func cpuTime() time.Duration { return 0 }

package network

// RetryDump runs a netlink dump until the kernel did not interrupt it
// (netlink.ErrDumpInterrupted comes with partial results), a few times at
// most: for readers outside this package (net-doctor).
func RetryDump[T any](f func() (T, error)) (T, error) { return retryDump(f) }

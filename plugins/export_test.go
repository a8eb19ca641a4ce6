package plugins

// WindowSize is the fixed HTTP/2 window of the host-plugin connection, for
// the bare plugin of the benchmarks to use the same one.
const WindowSize = windowSize

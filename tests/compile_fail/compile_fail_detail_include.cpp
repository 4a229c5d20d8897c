// lmshrink/detail/ is internal: including one of its headers directly does not compile; the
// public headers (lmshrink/files.hpp here) are the way in.
#include <lmshrink/detail/atomic_file.hpp>

int main() { return 0; }

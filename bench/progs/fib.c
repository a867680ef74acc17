// Iterative Fibonacci modulo 2^64, the count taken from the packet.
#include "bench_common.h"

SEC("xdp")
int fib(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long a = 0, b = 1;
	unsigned int n = data[0] + 300;
	for (unsigned int i = 0; i < n && i < 1000; i++) {
		unsigned long long t = a + b;
		a = b;
		b = t;
	}
	return a & 3;
}

char LICENSE[] SEC("license") = "GPL";

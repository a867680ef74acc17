// A loop calling non-inlined bpf-to-bpf subprograms.
#include "bench_common.h"

static __attribute__((noinline)) unsigned long long mix(unsigned long long a, unsigned long long b)
{
	a ^= b + 0x9E3779B97F4A7C15ULL + (a << 6) + (a >> 2);
	return a;
}

static __attribute__((noinline)) unsigned long long step(unsigned long long x, int i)
{
	return mix(x, i) * 31 + (x >> 17);
}

SEC("xdp")
int bpf2bpf_calls(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long x = load64(data);
	for (int i = 0; i < 64; i++)
		x = step(x, i);
	return x & 3;
}

char LICENSE[] SEC("license") = "GPL";

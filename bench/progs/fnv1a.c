// FNV-1a hash over all 128 packet bytes: a multiply-xor dependency chain.
#include "bench_common.h"

SEC("xdp")
int fnv1a(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < PKT_LEN; i++) {
		h ^= data[i];
		h *= 0x100000001b3ULL;
	}
	return (h >> 32) & 3;
}

char LICENSE[] SEC("license") = "GPL";

// Copy the packet to the stack word by word, modify it, and compare it back.
#include "bench_common.h"

SEC("xdp")
int memcpy_cmp(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned long long buf[PKT_LEN / 8];
#pragma unroll
	for (int i = 0; i < PKT_LEN / 8; i++)
		buf[i] = load64(data + 8 * i);
	((unsigned char *)buf)[data[1] & 63] ^= 0x5a;
	int diff = 0;
#pragma unroll
	for (int i = 0; i < PKT_LEN / 8; i++)
		if (buf[i] != load64(data + 8 * i))
			diff++;
	return diff & 3;
}

char LICENSE[] SEC("license") = "GPL";

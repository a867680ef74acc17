// Bitwise CRC-32 over 64 packet bytes: a branchy inner loop.
#include "bench_common.h"

SEC("xdp")
int crc32(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned int crc = 0xffffffff;
	for (int i = 0; i < 64; i++) {
		crc ^= data[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320 & -(crc & 1));
	}
	return ~crc & 3;
}

char LICENSE[] SEC("license") = "GPL";

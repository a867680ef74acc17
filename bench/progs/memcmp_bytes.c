// Byte-wise comparison of the two halves of the packet.
#include "bench_common.h"

SEC("xdp")
int memcmp_bytes(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	int first = -1;
	for (int i = 0; i < PKT_LEN / 2; i++) {
		if (data[i] != data[i + PKT_LEN / 2]) {
			first = i;
			break;
		}
	}
	return (first + 1) & 3;
}

char LICENSE[] SEC("license") = "GPL";

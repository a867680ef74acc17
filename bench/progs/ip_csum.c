// The IPv4 header checksum, folded, over the header in the packet (20 u16 words x 4).
#include "bench_common.h"

SEC("xdp")
int ip_csum(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	unsigned int total = 0;
	for (int round = 0; round < 4; round++) {
		unsigned int sum = round;
		for (int i = 0; i < 20; i++)
			sum += ((unsigned short *)(data + 14))[i];
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		total += (unsigned short)~sum;
	}
	return total & 3;
}

char LICENSE[] SEC("license") = "GPL";

// SPDX-License-Identifier: GPL-2.0
/* XDP packet counter: counts packets and bytes per IP protocol in a per-CPU array and
 * passes every packet. The classic first XDP program. */
#include "common.h"

struct datarec {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct datarec);
} proto_stats SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct datarec *rec;
	__u32 key = 0; /* 0 = not IPv4 */

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		key = ip->protocol;
	}
	rec = bpf_map_lookup_elem(&proto_stats, &key);
	if (!rec)
		return XDP_ABORTED;
	rec->packets++;
	rec->bytes += data_end - data;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

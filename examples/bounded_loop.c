// SPDX-License-Identifier: GPL-2.0
/* Bounded-loop parser: walks IPv6 extension headers and TCP options with loops the
 * verifier can bound, recording the MSS option it finds. */
#include "common.h"

#define MAX_EXT_HDRS 6
#define MAX_TCP_OPTS 10

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} last_mss SEC(".maps");

static __always_inline int is_ext_hdr(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS;
}

SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;
	void *cursor;
	__u8 nexthdr;
	__u32 key = 0;
	int i;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > data_end)
		return XDP_PASS;
	nexthdr = ip6->nexthdr;
	cursor = ip6 + 1;

	for (i = 0; i < MAX_EXT_HDRS; i++) {
		__u8 *ext = cursor;

		if (!is_ext_hdr(nexthdr))
			break;
		if ((void *)(ext + 2) > data_end)
			return XDP_PASS;
		nexthdr = ext[0];
		cursor += (ext[1] + 1) * 8;
	}
	if (nexthdr != IPPROTO_TCP)
		return XDP_PASS;
	tcp = cursor;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;

	cursor = tcp + 1;
	for (i = 0; i < MAX_TCP_OPTS; i++) {
		__u8 *opt = cursor;

		if ((void *)(opt + 1) > data_end || opt[0] == 0)
			break;
		if (opt[0] == 1) {
			cursor++;
			continue;
		}
		if ((void *)(opt + 4) > data_end)
			break;
		if (opt[0] == 2 && opt[1] == 4) {
			__u32 mss = (opt[2] << 8) | opt[3];

			bpf_map_update_elem(&last_mss, &key, &mss, BPF_ANY);
			break;
		}
		if (opt[1] < 2)
			break;
		cursor += opt[1];
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

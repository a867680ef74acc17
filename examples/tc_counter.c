// SPDX-License-Identifier: GPL-2.0
/* tc ingress counter: counts packets and bytes per (ethertype, IP protocol) in a hash map
 * keyed by a small struct, using the __sk_buff fields a classifier reads most (protocol,
 * len, pkt_type, ifindex) plus a packet read for the IPv4 protocol; marks IPv4 packets. */
#include "common.h"
#include <linux/pkt_cls.h>
#include <stddef.h>

struct flow_key {
	__u16 eth_proto; /* host order */
	__u8 ip_proto;
	__u8 pkt_type;
};

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct flow_key);
	__type(value, struct counters);
} tc_stats SEC(".maps");

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	struct flow_key key = {};
	struct counters *c, init = {};
	__u8 proto = 0;

	key.eth_proto = bpf_ntohs(skb->protocol);
	key.pkt_type = skb->pkt_type;
	if (skb->protocol == bpf_htons(ETH_P_IP) &&
	    bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto, 1) == 0)
		key.ip_proto = proto;
	c = bpf_map_lookup_elem(&tc_stats, &key);
	if (!c) {
		bpf_map_update_elem(&tc_stats, &key, &init, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&tc_stats, &key);
		if (!c)
			return TC_ACT_SHOT;
	}
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, skb->len);
	if (key.ip_proto)
		skb->mark = 0x100 | key.ip_proto;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";

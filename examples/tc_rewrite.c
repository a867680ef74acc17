// SPDX-License-Identifier: GPL-2.0
/* tc (cls_bpf, direct-action) program that rewrites headers: NATs the destination port of
 * UDP packets and decrements the IPv4 TTL, fixing checksums with the csum helpers. */
#include "common.h"
#include <linux/pkt_cls.h>
#include <stddef.h>

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define UDP_DPORT_OFF (UDP_OFF + offsetof(struct udphdr, dest))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))

const volatile __u16 from_port = 53;
const volatile __u16 to_port = 5353;

SEC("tc")
int tc_rewrite(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u16 old_ttl_word, new_ttl_word;
	__be16 old_port, new_port;

	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	if (udp->dest != bpf_htons(from_port))
		return TC_ACT_OK;

	old_port = udp->dest;
	new_port = bpf_htons(to_port);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_port, new_port, sizeof(new_port));
	bpf_skb_store_bytes(skb, UDP_DPORT_OFF, &new_port, sizeof(new_port), 0);

	/* TTL shares a 16-bit checksum word with the protocol field */
	if (bpf_skb_load_bytes(skb, IP_TTL_OFF, &old_ttl_word, 2) < 0)
		return TC_ACT_SHOT;
	new_ttl_word = old_ttl_word;
	((__u8 *)&new_ttl_word)[0] -= 1;
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl_word, new_ttl_word, 2);
	bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl_word, 2, 0);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";

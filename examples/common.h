/* Shared includes of the pybpf examples: UAPI headers plus libbpf's BPF-side headers. */
#ifndef PYBPF_EXAMPLES_COMMON_H
#define PYBPF_EXAMPLES_COMMON_H
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#endif

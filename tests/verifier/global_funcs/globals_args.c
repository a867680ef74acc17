// Memory arguments of a global function: uninitialised stack the callee fills, a
// buffer smaller than the pointee (refused at the call).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct pair { int a; int b; };
__attribute__((noinline)) int fill(struct pair *p)
{
	if (!p)
		return 0;
	p->a = 1;
	p->b = 2;
	return 0;
}
SEC("tc")
int uninit_arg(struct __sk_buff *skb)
{
	struct pair local;

	fill(&local);
	return local.a;
}
SEC("tc")
int small_arg(struct __sk_buff *skb)
{
	int x = 1;

	fill((struct pair *)&x);
	return x;
}
char LICENSE[] SEC("license") = "GPL";

// bpf_wq: a workqueue in a map value. bpf_wq_init binds it to its map,
// bpf_wq_set_callback_impl names the callback (a sleepable async callback, which must
// return 0), bpf_wq_start queues it: it runs later as callback(map, key, value).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __ksym __attribute__((section(".ksyms")))

struct bpf_wq {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

extern int bpf_wq_init(struct bpf_wq *wq, void *p__map, unsigned int flags) __ksym __weak;
extern int bpf_wq_start(struct bpf_wq *wq, unsigned int flags) __ksym __weak;
extern int bpf_wq_set_callback_impl(struct bpf_wq *wq,
				    int (callback_fn)(void *map, int *key, void *value),
				    unsigned int flags, void *aux__prog) __ksym __weak;

struct elem {
	__u64 runs;
	__u64 key_seen;
	struct bpf_wq wq;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct elem);
} wqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct elem);
} hwqs SEC(".maps");

static int work(void *map, int *key, void *value)
{
	struct elem *e = value;

	e->runs += 1;
	e->key_seen = *key + 100;
	return 0;
}

/* init (twice: -EBUSY), set the callback, start twice (queued once); packed results */
SEC("syscall")
int wq_array(void *ctx)
{
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);
	int a, b, c, d, f;

	if (!e)
		return -1;
	a = bpf_wq_init(&e->wq, &wqs, 0);
	b = bpf_wq_init(&e->wq, &wqs, 0);
	c = bpf_wq_set_callback_impl(&e->wq, work, 0, NULL);
	d = bpf_wq_start(&e->wq, 0);
	f = bpf_wq_start(&e->wq, 0);
	return (a & 0xff) | (b & 0xff) << 8 | (c & 0xff) << 16 | (d & 0xf) << 24 | (f & 0xf) << 28;
}

/* start without a callback: -EINVAL; flags: -EINVAL */
SEC("syscall")
int wq_errors(void *ctx)
{
	__u32 key = 0;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);
	int a, b, c;

	if (!e)
		return -1;
	a = bpf_wq_start(&e->wq, 0);
	b = bpf_wq_init(&e->wq, &wqs, 1);
	bpf_wq_init(&e->wq, &wqs, 0);
	c = bpf_wq_start(&e->wq, 0);
	return (a & 0xff) | (b & 0xff) << 8 | (c & 0xff) << 16;
}

SEC("syscall")
int wq_hash(void *ctx)
{
	__u32 key = 3;
	struct elem init = {}, *e;

	bpf_map_update_elem(&hwqs, &key, &init, BPF_NOEXIST);
	e = bpf_map_lookup_elem(&hwqs, &key);
	if (!e)
		return -1;
	bpf_wq_init(&e->wq, &hwqs, 0);
	bpf_wq_set_callback_impl(&e->wq, work, 0, NULL);
	return bpf_wq_start(&e->wq, 0);
}

/* refused: the wq of one map initialised with another */
SEC("syscall")
int wq_wrong_map(void *ctx)
{
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);

	if (!e)
		return -1;
	return bpf_wq_init(&e->wq, &hwqs, 0);
}

/* refused: not the bpf_wq field */
SEC("syscall")
int wq_wrong_offset(void *ctx)
{
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);

	if (!e)
		return -1;
	return bpf_wq_start((void *)&e->key_seen, 0);
}

static int bad_work(void *map, int *key, void *value)
{
	return 3;
}

/* refused: a workqueue callback returns 0 */
SEC("syscall")
int wq_bad_return(void *ctx)
{
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);

	if (!e)
		return -1;
	return bpf_wq_set_callback_impl(&e->wq, bad_work, 0, NULL);
}

/* a tc program may use one too (not sleepable itself) */
SEC("tc")
int wq_tc(struct __sk_buff *skb)
{
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&wqs, &key);

	if (!e)
		return 0;
	bpf_wq_init(&e->wq, &wqs, 0);
	bpf_wq_set_callback_impl(&e->wq, work, 0, NULL);
	bpf_wq_start(&e->wq, 0);
	return 0;
}

/* a map value where the map itself is expected, then a scalar */
SEC("syscall")
int wq_value_as_map(void *ctx)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&wqs, &k);

	if (!e)
		return 1;
	return bpf_wq_init(&e->wq, e, 0);
}

SEC("syscall")
int wq_scalar_as_map(void *ctx)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&wqs, &k);

	if (!e)
		return 1;
	return bpf_wq_init(&e->wq, (void *)(long)k, 0);
}

char _license[] SEC("license") = "GPL";

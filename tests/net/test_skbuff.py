"""pybpf.net.skbuff: the native ``struct sk_buff`` converted programs read."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from pybpf.net.skbuff import (
    CB_DATA,
    CB_DATA_END,
    CB_DATA_META,
    SKB_SHARED_INFO_SIZE,
    NetDeviceStruct,
    SkBuff,
)
from pybpf.runtime.memory import REGISTRY
from pybpf.uapi.kernel_structs import KSTRUCTS

SKB = KSTRUCTS["sk_buff"]


def _u(skb: SkBuff, off: int, fmt: str) -> int:
    return int(struct.unpack_from(fmt, skb.region.mv, off)[0])


@pytest.fixture
def skb() -> Iterator[SkBuff]:
    s = SkBuff("test", 512)
    yield s
    s.close()


def test_fields_sit_at_the_kernels_offsets(skb: SkBuff) -> None:
    skb.reset(64)
    skb.put(b"\xaa" * 100)
    assert _u(skb, SKB.off("len"), "<I") == 100
    assert _u(skb, SKB.off("head"), "<Q") == skb.frame.start
    assert _u(skb, SKB.off("data"), "<Q") == skb.frame.start + 64
    assert _u(skb, SKB.off("tail"), "<I") == 164  # an offset from head (64-bit kernels)
    assert _u(skb, SKB.off("end"), "<I") == skb.frame.size - SKB_SHARED_INFO_SIZE
    skb.pkt_type = 3
    assert skb.region.mv[SKB.off("__pkt_type_offset")] & 7 == 3
    skb.cb_data = bytes(range(20))
    assert bytes(skb.region.mv[CB_DATA:CB_DATA + 20]) == bytes(range(20))
    assert REGISTRY.find(skb.addr, SKB.size) is skb.region


def test_data_pointers_in_cb_follow_the_bounds(skb: SkBuff) -> None:
    skb.reset(64)
    skb.put(bytes(60))
    assert _u(skb, CB_DATA_END, "<Q") == 0  # only types with direct access compute them
    skb.compute_data_pointers()
    start, end = skb.bounds()
    assert (_u(skb, CB_DATA_META, "<Q"), _u(skb, CB_DATA_END, "<Q")) == (start, end)
    skb.set_bounds(start + 14, end - 2)
    assert _u(skb, CB_DATA_END, "<Q") == end - 2 and skb.len == 60 - 16


def test_expand_head_moves_packet_headers_and_shinfo(skb: SkBuff) -> None:
    skb.reset(64)
    skb.put(bytes(range(40)))
    skb.mac_header = skb.data
    skb.network_header = skb.data + 14
    skb.shinfo_field("gso_segs", 7)
    skb.compute_data_pointers()
    old_frame = skb.frame
    skb.cow_head(200)
    assert skb.frame is not old_frame and REGISTRY.find(old_frame.start) is not skb.frame
    assert skb.headroom_len() >= 200
    assert skb.packet() == bytes(range(40))
    assert skb.network_header - skb.mac_header == 14 and skb.mac_header == skb.data
    assert skb.shinfo_field("gso_segs") == 7
    assert _u(skb, CB_DATA_END, "<Q") == skb.data + 40
    skb.grow_tail(skb.tailroom_len() + 100)
    assert skb.tailroom_len() >= 100 and skb.packet() == bytes(range(40))


def test_put_past_the_buffer_is_refused(skb: SkBuff) -> None:
    skb.reset(64)
    with pytest.raises(ValueError, match="tailroom"):
        skb.put(bytes(1000))


def test_dev_ifindex_reaches_the_native_net_device(skb: SkBuff) -> None:
    dev = NetDeviceStruct(7, "veth0")
    try:
        skb.attach_dev(dev)
        assert _u(skb, SKB.off("dev"), "<Q") == dev.addr
        off = KSTRUCTS["net_device"].off("ifindex")
        assert struct.unpack_from("<I", dev.region.mv, off)[0] == 7
    finally:
        dev.close()

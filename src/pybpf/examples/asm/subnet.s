# Is the IPv4 destination of the Ethernet frame in r1 inside 192.168.1.0/24? (kernel syntax)
# mem: ff ff ff ff ff ff 00 11 22 33 44 55 08 00 45 00 00 1c 00 01 00 00 40 11 f9 8d c0 a8 00 64 c0 a8 01 2a
# expect: 1
r0 = 0
if r2 < 34 goto out
r3 = *(u16 *)(r1 +12)
if r3 != 0x8 goto out
r3 = *(u32 *)(r1 +30)
r3 = be32 r3
w3 &= 0xffffff00
if w3 != 0xc0a80100 goto out
r0 = 1
out:
exit

"""Virtual network devices for the host: XDP, tc (tcx) and socket filters on packets from
Python, pcap files or a real interface (see :mod:`pybpf.net.device`)."""

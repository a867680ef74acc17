"""Program types: one ``type_<name>.py`` module per ``BPF_PROG_TYPE_*``, registered in :mod:`ops`."""

"""Map types: one ``type_<name>.py`` module per ``BPF_MAP_TYPE_*``, registered in :mod:`ops`."""

"""Boot media: the initramfs and the loaders that fetch it.

Pure cores (cpio, ELF and modules.dep reading, iPXE and dnsmasq rendering)
sit beside thin shells that run apt-get, dpkg-deb, xorriso and mtools.
"""

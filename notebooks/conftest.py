"""The notebooks run in kernels started by nbval: give them their own user data and cache folders."""

import os
import tempfile

_home = tempfile.mkdtemp(prefix="ipyimagine-notebooks-")
os.environ.setdefault("IPYIMAGINE_HOME", _home)
os.environ.setdefault("IPYIMAGINE_CACHE", os.path.join(_home, "cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

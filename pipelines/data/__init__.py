"""Image datasets, their listings and the exact eval preprocessing (decode + normalise)."""

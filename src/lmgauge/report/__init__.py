"""Reports read run directories only, so they work on runs made elsewhere and on old runs."""

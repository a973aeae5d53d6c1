"""Users: the solo user of solo mode, and (later) accounts and sessions."""

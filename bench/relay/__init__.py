"""A bare Channels relay: the baseline the durable path is measured against.

One consumer joins a group and forwards what the group gets straight to its socket.
Nothing is stored, nothing is checked, no database is touched.
"""

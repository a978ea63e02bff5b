"""A browser's own record of a call: chrome://webrtc-internals dumps (both formats) and
rtcstats dumps (rtcstats-server, Jitsi) → neutral records, and the verdict for support staff.

    reader.py   the formats → PeerConnectionRecord values; the browser from its UserAgent
    rtcstats.py an rtcstats dump → the webrtc-internals document it stands for
    verdict.py  a record → what happened to the call, in words, with turncheck's reasons
"""

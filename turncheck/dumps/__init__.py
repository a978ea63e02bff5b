"""chrome://webrtc-internals dumps: readers (one per format) → neutral records, and the
verdict for support staff.

    reader.py   both dump formats seen in the wild → PeerConnectionRecord values
    verdict.py  a record → what happened to the call, in words, with turncheck's reasons
"""

"""A real headless Chromium as a test client: what it gathers for an RTCConfiguration,
to compare with turncheck's predictions (run inside the netns lab)."""

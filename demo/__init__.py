"""`make demo`: the whole product against the local Trakt emulator and a private keyring."""

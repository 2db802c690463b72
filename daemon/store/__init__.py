"""The on-disk store of uploaded image resources, where they expire, and the
byte-bounded cache of decoded pixels that the Filters API reads through (one
budget, shared with the session images)."""

"""Report rendering shared by server exports and the CLI (usage exports, compliance reports)."""

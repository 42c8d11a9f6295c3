"""What several test files share: the in-process federation, the TCP proxies, the recorder,
the data folders and the command line. Test files import from here, never from each other."""

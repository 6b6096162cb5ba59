"""The desktop shell: command line, window, embedded UI server, scheduler."""

"""The editor in use: retarget a track to a duration from the page, the API and the command line."""

"""Line features (issue 15): forwarding, do-not-disturb, caller-ID privacy, feature codes."""

"""The web app: training followed live, the comparison, and every model's answer for uploaded scans."""

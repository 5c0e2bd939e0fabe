"""What the platform's operators and services call, behind the admin token."""

"""Plans, users and their subscriptions: who is billed, on what terms."""

"""Rules every room shares: the error reasons, money, periods, settings, logs, input parsing."""

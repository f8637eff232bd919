"""The peripheral side of Gatehouse protocol v1 on Bumble, for the HCI test stack (docs/ble.md)."""

#!/bin/sh
# Writes the password file from the environment, then runs Mosquitto in the foreground.
# MQTT_EDGE_PASSWORD: the edge's; MQTT_CLOUD_PASSWORD: a cloud reader's; MQTT_DEVICE_PASSWORD:
# the demo password of client_1..client_3 as device users (one password per client).
set -eu
passwd=/mosquitto/data/passwd
: > "$passwd"
chmod 0700 "$passwd"
mosquitto_passwd -b "$passwd" edge "$MQTT_EDGE_PASSWORD"
mosquitto_passwd -b "$passwd" cloud "$MQTT_CLOUD_PASSWORD"
for client in client_1 client_2 client_3; do
  mosquitto_passwd -b "$passwd" "$client" "$MQTT_DEVICE_PASSWORD"
done
chown mosquitto:mosquitto "$passwd" 2>/dev/null || true  # Mosquitto reads it as its own user
chown mosquitto:mosquitto "$passwd" 2>/dev/null || true  # Mosquitto reads it as its own user
exec mosquitto -c /mosquitto/config/mosquitto.conf

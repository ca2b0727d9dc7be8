"""MQTT plumbing shared by the edge and the simulator: broker address and topic layout."""

from iotedge.mqtt.broker import BrokerAddress, client_kwargs, parse_broker, properties
from iotedge.mqtt.topics import TopicLayout, TopicMatch

__all__ = ["BrokerAddress", "TopicLayout", "TopicMatch", "client_kwargs", "parse_broker", "properties"]

"""Drives the EC2 emulator (moto) for the AWS fetcher test: creates, retags and terminates
instances through the real boto3 client.

Usage:
  ec2.py ENDPOINT create       -> prints {"prod": [...], "staging": [...]} instance ids
  ec2.py ENDPOINT tag ID KEY VALUE
  ec2.py ENDPOINT terminate ID
"""

import json
import sys

import boto3


def ec2(endpoint):
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def run(client, count, tags):
    image = client.describe_images()["Images"][0]["ImageId"]
    reservation = client.run_instances(
        ImageId=image,
        MinCount=count,
        MaxCount=count,
        InstanceType="m5.large",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return [i["InstanceId"] for i in reservation["Instances"]]


def main():
    endpoint, command, *args = sys.argv[1:]
    client = ec2(endpoint)
    if command == "create":
        prod = run(client, 3, {"env": "prod", "role": "web", "team": "infra", "Name": "web"})
        prod += run(client, 2, {"env": "prod", "role": "db", "team": "data", "Name": "db"})
        staging = run(client, 2, {"env": "staging", "role": "web"})
        print(json.dumps({"prod": prod, "staging": staging}))
    elif command == "tag":
        instance, key, value = args
        client.create_tags(Resources=[instance], Tags=[{"Key": key, "Value": value}])
    elif command == "terminate":
        client.terminate_instances(InstanceIds=[args[0]])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()

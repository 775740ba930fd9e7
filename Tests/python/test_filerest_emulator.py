"""The FileREST emulator speaks the real protocol: the official Azure SDK (azure-storage-file-share)
drives it through every operation Tiergate uses, with SharedKey and SAS credentials."""

import base64
import datetime
import os
import threading
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ElementTree

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.fileshare import (AccountSasPermissions, FileSasPermissions, ResourceTypes, ShareClient,
                                     ShareFileClient, ShareSasPermissions, ShareServiceClient, generate_account_sas,
                                     generate_file_sas, generate_share_sas, ShareLeaseClient)


@pytest.fixture
def share(emulator):
    """A fresh share for each test, named after nothing in particular so tests never collide."""
    client = ShareServiceClient(emulator.url, credential=emulator.credential)
    share = client.create_share("t-" + uuid.uuid4().hex[:20])
    yield share
    share.delete_share()


def random_bytes(count):
    return os.urandom(count)


def in_one_hour():
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)


def test_files_are_created_in_nested_directories_and_read_back_by_range(share):
    share.get_directory_client("a").create_directory()
    share.get_directory_client("a/b").create_directory()
    file = share.get_file_client("a/b/data.bin")
    data = random_bytes(10_000)
    file.create_file(size=len(data))
    file.upload_range(data[:6000], offset=0, length=6000)
    file.upload_range(data[6000:], offset=6000, length=4000)
    assert file.download_file().readall() == data
    assert file.download_file(offset=100, length=900).readall() == data[100:1000]
    assert file.get_file_properties().size == 10_000


def test_creating_a_file_under_a_missing_directory_reports_parent_not_found(share):
    with pytest.raises(ResourceNotFoundError) as error:
        share.get_file_client("missing/file").create_file(size=1)
    assert error.value.error_code == "ParentNotFound"


def test_a_large_upload_in_parallel_ranges_round_trips(share):
    data = random_bytes(13 * 1024 * 1024 + 17)
    file = share.get_file_client("large.bin")
    file.upload_file(data, max_concurrency=4)
    assert file.download_file(max_concurrency=4).readall() == data
    assert file.download_file(offset=9_000_000, length=100).readall() == data[9_000_000:9_000_100]


def test_a_range_larger_than_4_mib_is_refused(share):
    file = share.get_file_client("big-range")
    file.create_file(size=5 * 1024 * 1024)
    with pytest.raises(HttpResponseError) as error:
        file.upload_range(bytes(5 * 1024 * 1024), offset=0, length=5 * 1024 * 1024)
    assert error.value.status_code == 413
    assert error.value.error_code == "RequestBodyTooLarge"


def test_clearing_a_range_zeroes_it(share):
    file = share.get_file_client("clear.bin")
    file.upload_file(b"\xff" * 2048)
    file.clear_range(offset=512, length=512)
    assert file.download_file().readall() == b"\xff" * 512 + bytes(512) + b"\xff" * 1024


def test_reading_past_the_end_clamps_and_reading_beyond_it_is_invalid_range(share, emulator):
    file = share.get_file_client("short.bin")
    file.upload_file(b"0123456789")
    assert file.download_file(offset=5, length=100).readall() == b"56789"
    with pytest.raises(HttpResponseError) as error:
        file.download_file(offset=10, length=5).readall()
    assert error.value.status_code == 416


def test_listing_pages_with_markers_and_filters_by_prefix(share):
    directory = share.get_directory_client("list")
    directory.create_directory()
    names = [f"file-{index:02d}" for index in range(12)]
    for name in names:
        directory.get_file_client(name).upload_file(name.encode())
    directory.get_subdirectory_client("sub").create_directory()

    pages = directory.list_directories_and_files(results_per_page=5).by_page()
    seen, page_sizes = [], []
    for page in pages:
        items = list(page)
        page_sizes.append(len(items))
        seen += [(item.name, item.is_directory) for item in items]
    assert page_sizes == [5, 5, 3]
    assert sorted(seen) == sorted([(name, False) for name in names] + [("sub", True)])
    sizes = {item.name: item.size for item in directory.list_directories_and_files() if not item.is_directory}
    assert sizes == {name: len(name) for name in names}
    assert sorted(item.name for item in directory.list_directories_and_files(name_starts_with="file-1")) == \
        [f"file-1{index}" for index in range(2)]


def test_names_xml_cannot_carry_are_listed_percent_encoded(share):
    odd = "odd\uffffname"
    share.get_file_client(odd).upload_file(b"x")
    assert [item.name for item in share.list_directories_and_files()] == [odd]


def test_names_are_case_insensitive_and_keep_their_case(share):
    share.get_file_client("MixedCase.txt").upload_file(b"one")
    assert share.get_file_client("mixedcase.TXT").download_file().readall() == b"one"
    assert [item.name for item in share.list_directories_and_files()] == ["MixedCase.txt"]


def test_delete_removes_files_and_refuses_non_empty_directories(share):
    share.get_directory_client("d").create_directory()
    file = share.get_file_client("d/f")
    file.upload_file(b"data")
    with pytest.raises(ResourceExistsError) as error:
        share.get_directory_client("d").delete_directory()
    assert error.value.error_code == "DirectoryNotEmpty"
    file.delete_file()
    with pytest.raises(ResourceNotFoundError) as error:
        file.get_file_properties()
    assert error.value.error_code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        file.delete_file()
    share.get_directory_client("d").delete_directory()


def test_a_leased_file_refuses_writes_without_its_lease_id(share):
    file = share.get_file_client("leased")
    file.upload_file(b"v1")
    lease = file.acquire_lease()
    with pytest.raises(HttpResponseError) as error:
        file.upload_range(b"v2", offset=0, length=2)
    assert error.value.status_code == 412
    assert error.value.error_code == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as error:
        file.delete_file()
    assert error.value.error_code == "LeaseIdMissing"
    file.upload_range(b"v2", offset=0, length=2, lease=lease)
    assert file.download_file().readall() == b"v2", "reads need no lease id"
    assert file.get_file_properties().lease.state == "leased"

    with pytest.raises(HttpResponseError) as error:
        file.acquire_lease()
    assert error.value.error_code == "LeaseAlreadyPresent"

    new_id = str(uuid.uuid4())
    lease.change(proposed_lease_id=new_id)
    assert lease.id == new_id
    with pytest.raises(HttpResponseError) as error:
        file.upload_range(b"v3", offset=0, length=2, lease=str(uuid.uuid4()))
    assert error.value.error_code == "LeaseIdMismatchWithFileOperation"
    lease.release()
    file.upload_range(b"v3", offset=0, length=2)

    file.acquire_lease()
    ShareLeaseClient(file).break_lease()  # anyone may break a lease, without knowing its id
    assert file.get_file_properties().lease.state == "available"
    file.delete_file()


def test_rename_replaces_only_when_asked(share):
    share.get_file_client("source").upload_file(b"new")
    share.get_file_client("target").upload_file(b"old")
    with pytest.raises(ResourceExistsError) as error:
        share.get_file_client("source").rename_file("target", overwrite=False)
    assert error.value.error_code == "ResourceAlreadyExists"
    assert share.get_file_client("target").download_file().readall() == b"old"
    renamed = share.get_file_client("source").rename_file("target", overwrite=True)
    assert renamed.download_file().readall() == b"new"
    with pytest.raises(ResourceNotFoundError):
        share.get_file_client("source").get_file_properties()


def test_rename_without_replace_has_exactly_one_winner(share):
    """The atomic create Tiergate's commit log relies on: racing renames onto one name, one wins."""
    share.get_directory_client("log").create_directory()
    for round in range(5):
        writers = 8
        for writer in range(writers):
            share.get_file_client(f"log/tmp-{round}-{writer}").upload_file(bytes([writer]))
        barrier = threading.Barrier(writers)
        outcomes = [None] * writers

        def race(writer):
            client = share.get_file_client(f"log/tmp-{round}-{writer}")
            barrier.wait()
            try:
                client.rename_file(f"log/{round:04d}", overwrite=False)
                outcomes[writer] = "won"
            except ResourceExistsError:
                outcomes[writer] = "lost"

        threads = [threading.Thread(target=race, args=(writer,)) for writer in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("won") == 1 and outcomes.count("lost") == writers - 1
        winner = outcomes.index("won")
        assert share.get_file_client(f"log/{round:04d}").download_file().readall() == bytes([winner])


def test_a_wrong_key_is_refused_with_authentication_failed(share, emulator):
    wrong = {"account_name": emulator.account, "account_key": base64.b64encode(os.urandom(64)).decode()}
    client = ShareClient(emulator.url, share.share_name, credential=wrong)
    with pytest.raises(ClientAuthenticationError) as error:
        client.get_file_client("anything").upload_file(b"x")
    assert error.value.status_code == 403
    assert error.value.error_code == "AuthenticationFailed"


def test_the_error_body_is_the_service_xml(share, emulator):
    request = urllib.request.Request(f"{emulator.url}/{share.share_name}/missing", method="GET")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request)
    assert error.value.code == 401
    body = ElementTree.fromstring(error.value.read())
    assert body.tag == "Error" and body.findtext("Code") == "NoAuthenticationInformation"
    assert "RequestId:" in body.findtext("Message")
    assert error.value.headers["x-ms-error-code"] == "NoAuthenticationInformation"


def test_share_sas_grants_its_permissions_and_no_others(share, emulator):
    share.get_file_client("readable").upload_file(b"content")
    token = generate_share_sas(emulator.account, share.share_name, emulator.key,
                               permission=ShareSasPermissions(read=True, list=True), expiry=in_one_hour())
    client = ShareClient(emulator.url, share.share_name, credential=token)
    assert client.get_file_client("readable").download_file().readall() == b"content"
    assert [item.name for item in client.list_directories_and_files()] == ["readable"]
    with pytest.raises(HttpResponseError) as error:
        client.get_file_client("new").upload_file(b"x")
    assert error.value.status_code == 403
    assert error.value.error_code == "AuthorizationPermissionMismatch"


def test_file_sas_is_limited_to_its_file(share, emulator):
    share.get_directory_client("dir").create_directory()
    share.get_file_client("dir/other").upload_file(b"other")
    token = generate_file_sas(emulator.account, share.share_name, ["dir", "mine"], emulator.key,
                              permission=FileSasPermissions(read=True, create=True, write=True), expiry=in_one_hour())
    mine = ShareFileClient(emulator.url, share.share_name, "dir/mine", credential=token)
    mine.upload_file(b"written with a file SAS")
    assert mine.download_file().readall() == b"written with a file SAS"
    other = ShareFileClient(emulator.url, share.share_name, "dir/other", credential=token)
    with pytest.raises(ClientAuthenticationError) as error:
        other.download_file().readall()
    assert error.value.error_code == "AuthenticationFailed"


def test_account_sas_checks_services_resource_types_and_expiry(share, emulator):
    token = generate_account_sas(emulator.account, emulator.key, ResourceTypes(container=True, object=True),
                                 AccountSasPermissions(read=True, write=True, create=True, list=True, delete=True),
                                 expiry=in_one_hour())
    client = ShareClient(emulator.url, share.share_name, credential=token)
    client.get_file_client("via-account-sas").upload_file(b"ok")
    assert [item.name for item in client.list_directories_and_files()] == ["via-account-sas"]
    client.get_file_client("via-account-sas").delete_file()

    objects_only = generate_account_sas(emulator.account, emulator.key, ResourceTypes(object=True),
                                        AccountSasPermissions(list=True), expiry=in_one_hour())
    with pytest.raises(HttpResponseError) as error:
        list(ShareClient(emulator.url, share.share_name, credential=objects_only).list_directories_and_files())
    assert error.value.error_code == "AuthorizationResourceTypeMismatch"

    expired = generate_account_sas(emulator.account, emulator.key, ResourceTypes(object=True),
                                   AccountSasPermissions(read=True),
                                   expiry=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1))
    with pytest.raises(ClientAuthenticationError) as error:
        ShareClient(emulator.url, share.share_name, credential=expired).get_file_client("x").get_file_properties()
    assert error.value.error_code == "AuthenticationFailed"


def test_a_tampered_sas_is_refused(share, emulator):
    token = generate_share_sas(emulator.account, share.share_name, emulator.key,
                               permission=ShareSasPermissions(read=True), expiry=in_one_hour())
    tampered = token.replace("sp=r", "sp=rwdl")
    with pytest.raises(ClientAuthenticationError) as error:
        ShareClient(emulator.url, share.share_name, credential=tampered).get_file_client("x").upload_file(b"x")
    assert error.value.error_code == "AuthenticationFailed"


def test_metadata_names_mixing_underscores_and_digits_sign_correctly(share):
    """The service orders x-ms-meta-* headers with its own collation; a naive sort breaks the signature."""
    metadata = {"a_1": "x", "a1": "y", "a-b": "z", "A_b2": "w", "_9": "v", "b": "u"}
    file = share.get_file_client("metadata")
    file.upload_file(b"m", metadata=metadata)
    assert {name.lower(): value for name, value in file.get_file_properties().metadata.items()} == \
        {name.lower(): value for name, value in metadata.items()}


def test_trailing_dots_are_trimmed_unless_allowed(share, emulator):
    share.get_file_client("dotted.").upload_file(b"trimmed")
    assert share.get_file_client("dotted").download_file().readall() == b"trimmed"

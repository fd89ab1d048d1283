"""Whose is a Reference, rule by rule: URLs compared as FHIR compares them (scheme and host in any case,
default ports, versions, trailing slashes, IPv6 hosts), references relative to the entry's server,
internal urns no entry carries, and contained resources (docs/MUTATION.md lists the mutants killed)."""

from __future__ import annotations

import pytest

from ehr.fhir_refs import OTHER, TARGET, UNRESOLVED, PatientRefs, _absolute, _base, _norm, _relative, resolve


@pytest.mark.parametrize("url, normal", [
    ("HTTPS://Example.ORG:443/fhir/Patient/AbC/_history/2/", "https://example.org/fhir/Patient/AbC"),
    ("http://h:80/fhir/Patient/1/", "http://h/fhir/Patient/1"),
    ("http://h:8080/fhir/Patient/1", "http://h:8080/fhir/Patient/1"),
    ("https://h:80/fhir/Patient/1", "https://h:80/fhir/Patient/1"),  # 80 is not https's default
    ("HTTP://h:443/fhir", "http://h:443/fhir"),
    ("https://[::1]:443/fhir/Patient/1", "https://[::1]/fhir/Patient/1"),
    ("https://h/fhir/Binary/x://y", "https://h/fhir/Binary/x://y"),
    ("https://h/fhir/Patient/ABX", "https://h/fhir/Patient/ABX"),
])
def test_urls_are_compared_as_fhir_compares_them(url, normal):
    assert _norm(url) == normal


def test_the_server_base_and_the_relative_form_of_a_reference():
    assert _base("https://h/fhir/Observation/1") == "https://h/fhir"
    assert _base("https://h/Observation/1") == "https://h"
    assert _relative("https://h/fhir/Patient/1/_history/3") == "Patient/1" == _relative("Patient/1")
    assert _absolute("http://h/x") and _absolute("https://h/x") and not _absolute("Patient/1")
    assert not _absolute(None)


@pytest.fixture
def patient():
    return {"resourceType": "Patient", "id": "1"}


def test_a_reference_to_a_chart_entry_is_that_entrys_patient(patient):
    other = {"resourceType": "Patient", "id": "2"}
    refs = PatientRefs("Patient/1", {"urn:uuid:p": patient, "urn:uuid:o": other}, [patient], [])
    assert refs.whose({"reference": "urn:uuid:p"}) == TARGET
    assert refs.whose({"reference": "urn:uuid:o"}) == OTHER
    assert refs.whose({"reference": 5}) == OTHER and refs.whose("Patient/1") == OTHER
    no_target = PatientRefs(None, {"urn:uuid:p": patient}, [patient], [])
    assert no_target.whose({"reference": "urn:uuid:p"}) == OTHER


def test_internal_urns_that_no_entry_carries_are_counted_as_unresolved(patient):
    refs = PatientRefs("Patient/1", {}, [patient], [])
    assert refs.unresolved_urns == 0
    assert refs.whose({"reference": "urn:uuid:nobody"}) == UNRESOLVED
    assert refs.whose({"reference": "urn:uuid:nobody-else"}) == UNRESOLVED
    assert refs.unresolved_urns == 2


def test_absolute_references_match_the_patients_own_urls_and_the_servers(patient):
    refs = PatientRefs("Patient/1", {}, [patient], ["http://ehr.example/fhir/Patient/1", "urn:uuid:p"],
                       server="https://srv.example/fhir/")
    assert refs.whose({"reference": "HTTP://EHR.example:80/fhir/Patient/1/_history/4"}) == TARGET
    assert refs.whose({"reference": "https://srv.example/fhir/Patient/1"}) == TARGET
    assert refs.whose({"reference": "https://other.example/fhir/Patient/1"}) == OTHER
    assert refs.bases == {"http://ehr.example/fhir", "https://srv.example/fhir"}


def test_a_relative_reference_is_relative_to_the_server_of_its_entry(patient):
    refs = PatientRefs("Patient/1", {}, [patient], [], server="https://srv.example/fhir")
    ref = {"reference": "Patient/1"}
    assert refs.whose(ref, "https://srv.example/fhir/Observation/9") == TARGET
    assert refs.whose(ref, "https://other.example/fhir/Observation/9") == OTHER
    assert refs.whose(ref, "urn:uuid:obs") == TARGET  # an entry of the bundle itself
    assert refs.whose({"reference": "Patient/2"}, "https://srv.example/fhir/Observation/9") == OTHER


def test_the_server_base_is_taken_as_given_but_its_trailing_slash(patient):
    refs = PatientRefs("Patient/1", {}, [patient], [], server="https://srv.example/fhirX")
    assert refs.whose({"reference": "https://srv.example/fhirX/Patient/1"}) == TARGET


def test_a_server_that_is_not_a_url_adds_no_home_for_the_patient(patient):
    refs = PatientRefs("Patient/1", {}, [patient], [], server="not-a-url")
    assert refs.absolute == set() and refs.bases == set()
    assert refs.whose({"reference": "Patient/1"}, "https://other.example/fhir/Observation/9") == TARGET


def test_resolve_finds_contained_resources_entries_and_type_id_but_never_an_unknown_urn():
    t1 = {"id": "t1", "resourceType": "Condition"}
    container = {"contained": [{"id": "t0"}, "not a resource", t1]}
    assert resolve({"reference": "#t1"}, {}, {}, container) is t1
    assert resolve({"reference": "#t9"}, {}, {}, container) is None
    assert resolve({"reference": "#t1"}, {}, {}, {"contained": "t1"}) is None
    entry, typed = {"id": "e"}, {"id": "x"}
    assert resolve({"reference": "urn:uuid:e"}, {"urn:uuid:e": entry}, {}) is entry
    assert resolve({"reference": "urn:uuid:x"}, {}, {"urn:uuid:x": typed}) is None
    assert resolve({"reference": "https://h/fhir/Condition/x/_history/1"}, {}, {"Condition/x": typed}) is typed
    assert resolve({"reference": 5}, {}, {}) is None and resolve(None, {}, {}) is None

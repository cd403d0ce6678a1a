//! The AWS-side backstop (`aws.backstop = "scheduler"`), against moto's EventBridge
//! Scheduler and SSO Admin: what the schedule holds (time, target, input, role), deletion
//! at the normal revocation, the overlap rule (one schedule per assignment, at the latest
//! end of its live grants), creating twice, the alert when it keeps failing (the fault
//! layer), and its firing simulated by running its target's input against SSO Admin.
//! Moto does not fire schedules, so the tests check what was created, then act it out.

mod common;

use common::moto::{alice_asks, aws_config, in_moto, moto_for, sdk_for, Moto};
use common::{person, Backend, TestEnv};
use portcullis::config::BackstopSettings;
use portcullis::provisioner::sso_admin::backstop::{
    at_expression, SchedulerBackstop, DELETE_TARGET,
};
use portcullis::provisioner::sso_admin::SsoAdminProvisioner;
use portcullis::provisioner::{Assignment, Backstop};
use portcullis::store::GrantRow;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::123456789012:role/portcullis-backstop";
const GRACE: Duration = Duration::from_secs(900);

struct Setup {
    moto: Moto,
    provisioner: Arc<SsoAdminProvisioner>,
    sso: aws_sdk_ssoadmin::Client,
    scheduler: aws_sdk_scheduler::Client,
    backstop: Arc<SchedulerBackstop>,
}

async fn setup() -> Setup {
    let (moto, provisioner, sso) = moto_for().await;
    let scheduler = aws_sdk_scheduler::Client::new(&sdk_for(&moto).await);
    scheduler
        .create_schedule_group()
        .name("portcullis")
        .send()
        .await
        .unwrap();
    let backstop = SchedulerBackstop::connect(
        &aws_config(&moto),
        BackstopSettings {
            group: "portcullis".into(),
            grace: GRACE,
            role_arn: ROLE.into(),
        },
        provisioner.instance_arn(),
    )
    .await;
    backstop.check_group().await.unwrap();
    Setup {
        moto,
        provisioner,
        sso,
        scheduler,
        backstop: Arc::new(backstop),
    }
}

impl Setup {
    fn worker(&self, env: &TestEnv) -> portcullis::worker::Worker {
        env.worker_with(self.provisioner.clone(), common::settings())
            .with_backstop(self.backstop.clone(), GRACE)
    }

    fn assignment(&self, g: &GrantRow) -> Assignment {
        Assignment {
            account_id: g.account_id.clone(),
            permission_set_arn: g.permission_set_arn.clone(),
            user_id: g.principal_id.clone(),
            user_name: String::new(),
            principal_id: g.aws_principal_id.clone(),
        }
    }

    /// The schedule of this grant's assignment, as moto holds it.
    async fn schedule(
        &self,
        g: &GrantRow,
    ) -> Option<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
        let name = self.backstop.schedule_name(&self.assignment(g));
        match self
            .scheduler
            .get_schedule()
            .name(name)
            .group_name("portcullis")
            .send()
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                use aws_sdk_scheduler::error::ProvideErrorMetadata;
                assert_eq!(e.code(), Some("ResourceNotFoundException"), "{e:?}");
                None
            }
        }
    }

    async fn schedules(&self) -> usize {
        self.scheduler
            .list_schedules()
            .group_name("portcullis")
            .send()
            .await
            .unwrap()
            .schedules()
            .len()
    }
}

/// A grant's assignment gets its schedule when it turns active: one-time, at its end plus
/// the grace, the universal DeleteAccountAssignment target with the grant's instance,
/// account, permission set and principal, run as the role, deleted after it runs. The
/// normal revocation deletes it. Acted out, its input deletes the assignment.
async fn a_grant_gets_its_schedule_and_loses_it_at_revocation(b: Backend) {
    let env = TestEnv::new(b).await;
    let s = setup().await;
    let (g, _) = alice_asks(&env, &s.provisioner).await;
    let w = s.worker(&env);
    env.settle(&w).await;
    let g = env.grant(&g.access_grant_id).await;
    assert_eq!(g.status.as_str(), "active");
    let sched = s.schedule(&g).await.expect("a schedule for the live grant");
    assert_eq!(
        sched.schedule_expression(),
        Some(at_expression(g.ends_at.millis() + GRACE.as_millis() as i64).as_str())
    );
    assert_eq!(sched.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        sched.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    assert_eq!(
        sched.flexible_time_window().map(|f| f.mode().as_str()),
        Some("OFF")
    );
    let target = sched.target().unwrap();
    assert_eq!(target.arn(), DELETE_TARGET);
    assert_eq!(target.role_arn(), ROLE);
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(
        input,
        json!({
            "InstanceArn": s.provisioner.instance_arn(),
            "TargetId": g.account_id,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": g.permission_set_arn,
            "PrincipalType": "USER",
            "PrincipalId": g.aws_principal_id.clone().unwrap(),
        })
    );
    assert_eq!(s.schedules().await, 1);

    // The firing, acted out: the target's input, as Scheduler would send it to SSO Admin.
    assert_eq!(in_moto(&s.sso, &s.provisioner, &g).await, 1);
    s.sso
        .delete_account_assignment()
        .instance_arn(input["InstanceArn"].as_str().unwrap())
        .target_id(input["TargetId"].as_str().unwrap())
        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
        .permission_set_arn(input["PermissionSetArn"].as_str().unwrap())
        .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
        .principal_id(input["PrincipalId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        in_moto(&s.sso, &s.provisioner, &g).await,
        0,
        "the backstop removes it"
    );

    // The normal end: revoked (the assignment was already gone), schedule deleted.
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(s.schedule(&g).await.is_none());
    assert_eq!(s.schedules().await, 0);
}

/// Two grants on one assignment share one schedule, at the later end: the backstop never
/// cuts the grant that is still live. The first ending moves nothing; the last deletes it.
async fn overlapping_grants_share_one_schedule_at_the_latest_end(b: Backend) {
    let env = TestEnv::new(b).await;
    let s = setup().await;
    let w = s.worker(&env);
    let first = {
        let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
        env.only_grant(&rid).await
    };
    env.settle(&w).await;
    let second = {
        let rid = env.ask(&person("alice"), "sandbox-admin", "3h").await;
        env.only_grant(&rid).await
    };
    env.settle(&w).await;
    let (first, second) = (
        env.grant(&first.access_grant_id).await,
        env.grant(&second.access_grant_id).await,
    );
    assert_eq!(first.status.as_str(), "active");
    assert_eq!(second.status.as_str(), "active");
    assert!(second.ends_at > first.ends_at);
    let later = at_expression(second.ends_at.millis() + GRACE.as_millis() as i64);
    assert_eq!(s.schedules().await, 1, "one per assignment");
    assert_eq!(
        s.schedule(&first).await.unwrap().schedule_expression(),
        Some(later.as_str())
    );
    // The first ends: the second still holds the assignment, and the schedule stays at
    // its end.
    env.set_time(first.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&first.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(in_moto(&s.sso, &s.provisioner, &second).await, 1);
    assert_eq!(
        s.schedule(&second).await.unwrap().schedule_expression(),
        Some(later.as_str())
    );
    env.set_time(second.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&second.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert_eq!(s.schedules().await, 0);
}

/// Scheduler refuses for a while: the grant stays active, the admins are told the
/// backstop is missing for it, the worker retries, and the alert clears once it is set.
async fn a_schedule_that_cannot_be_made_alerts_and_is_retried(b: Backend) {
    let env = TestEnv::new(b).await;
    let s = setup().await;
    s.moto
        .fault(
            "arm",
            json!({"operation": "CreateSchedule", "count": 1000, "code": "AccessDeniedException",
                   "status": 400, "message": "not authorized to perform scheduler:CreateSchedule"}),
        )
        .await;
    let (g, _) = alice_asks(&env, &s.provisioner).await;
    let w = s.worker(&env);
    // By hand, a few seconds at a time (retries come back within the backoff's 5 s cap).
    for _ in 0..40 {
        w.drain().await.unwrap();
        if !env.alerts("sync_backstop_failing").await.is_empty() {
            break;
        }
        env.advance(Duration::from_secs(6));
    }
    let g = env.grant(&g.access_grant_id).await;
    assert_eq!(
        g.status.as_str(),
        "active",
        "the grant stands without its backstop"
    );
    let alerts = env.alerts("sync_backstop_failing").await;
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].message.contains("backstop is missing for grant")
            && alerts[0].message.contains("AccessDeniedException"),
        "{}",
        alerts[0].message
    );
    assert!(s.schedule(&g).await.is_none());
    // Scheduler lets it through again: the next try sets it, and the alert is resolved.
    s.moto
        .fault("disarm", json!({"operation": "CreateSchedule"}))
        .await;
    for _ in 0..10 {
        if s.schedule(&g).await.is_some() {
            break;
        }
        env.advance(Duration::from_secs(6));
        w.drain().await.unwrap();
    }
    assert!(s.schedule(&g).await.is_some());
    assert!(env.alerts("sync_backstop_failing").await.is_empty());
}

/// Reconciliation holds the schedules against the live grants: the schedule of an active
/// grant that went missing is set again (a sync queued, audited), one that protects no
/// live grant is deleted (audited), a schedule in the group that the portal did not make
/// is left alone, and a second run finds nothing to do.
async fn reconciliation_repairs_missing_schedules_and_deletes_leftovers(b: Backend) {
    use portcullis::upkeep::reconcile::{run as reconcile, ScheduleFindings};
    let env = TestEnv::new(b).await;
    let s = setup().await;
    let (g, _) = alice_asks(&env, &s.provisioner).await;
    let w = s.worker(&env);
    env.settle(&w).await;
    let g = env.grant(&g.access_grant_id).await;
    assert_eq!(g.status.as_str(), "active");
    assert!(s.schedule(&g).await.is_some());
    assert_eq!(env.audit_with("backstop.set").await.len(), 1);
    // Its schedule is lost; one for an assignment no grant holds is left over; someone
    // else's schedule shares the group.
    s.backstop.disarm(&s.assignment(&g)).await.unwrap();
    let leftover = Assignment {
        user_id: "https://idp|u-nobody".into(),
        principal_id: Some("user-9".into()),
        ..s.assignment(&g)
    };
    s.backstop.arm(&leftover, 1_900_000_000_000).await.unwrap();
    let theirs = Assignment {
        principal_id: Some("user-8".into()),
        ..leftover.clone()
    };
    let window = aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
        .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
        .build()
        .unwrap();
    s.scheduler
        .create_schedule()
        .name("someone-elses")
        .group_name("portcullis")
        .schedule_expression("at(2030-01-01T00:00:00)")
        .flexible_time_window(window)
        .target(
            aws_sdk_scheduler::types::Target::builder()
                .arn(DELETE_TARGET)
                .role_arn(ROLE)
                .input(s.backstop.input(&theirs).unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(s.schedules().await, 2);

    let upkeep = portcullis::config::Upkeep::default();
    let run = || async {
        reconcile(
            &env.store,
            s.provisioner.as_ref(),
            Some(s.backstop.as_ref() as &dyn Backstop),
            &*env.clock,
            &upkeep,
            &env.wake,
        )
        .await
        .unwrap()
    };
    let found = run().await;
    assert_eq!(
        found.backstop,
        Some(ScheduleFindings {
            schedules: 1,
            repaired: 1,
            removed: 1
        }),
        "{found}"
    );
    assert!(
        found
            .to_string()
            .contains("1 missing for live grants set again"),
        "{found}"
    );
    assert_eq!(env.audit_with("reconcile.backstop_missing").await.len(), 1);
    assert_eq!(env.audit_with("reconcile.backstop_orphan").await.len(), 1);
    // The leftover is gone, someone else's stays; the worker sets the missing one.
    env.settle(&w).await;
    assert!(s.schedule(&g).await.is_some());
    assert_eq!(s.schedules().await, 2, "the grant's, and someone else's");
    // In step now.
    let found = run().await;
    assert_eq!(
        found.backstop,
        Some(ScheduleFindings {
            schedules: 1,
            repaired: 0,
            removed: 0
        })
    );
    // A repair already on its way is not queued twice.
    s.backstop.disarm(&s.assignment(&g)).await.unwrap();
    let found = run().await;
    assert_eq!(found.backstop.as_ref().map(|b| b.repaired), Some(1));
    let found = run().await;
    assert_eq!(
        found.backstop.as_ref().map(|b| b.repaired),
        Some(0),
        "its sync is waiting"
    );
    assert_eq!(
        env.jobs(&g.access_grant_id)
            .await
            .iter()
            .filter(|j| j.kind.as_str() == "sync_backstop")
            .count(),
        1
    );
}

both!(
    a_grant_gets_its_schedule_and_loses_it_at_revocation,
    overlapping_grants_share_one_schedule_at_the_latest_end,
    a_schedule_that_cannot_be_made_alerts_and_is_retried,
    reconciliation_repairs_missing_schedules_and_deletes_leftovers,
    the_simulated_backstop_protects_the_demo,
);

/// Made twice (a worker that died between the call and its record, then ran again):
/// still one schedule, at the latest time asked; deleting twice is fine too.
#[tokio::test]
async fn arming_twice_and_disarming_twice_are_harmless() {
    let s = setup().await;
    let a = Assignment {
        account_id: "111111111111".into(),
        permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
        user_id: "https://idp|u-alice".into(),
        user_name: String::new(),
        principal_id: Some("user-1".into()),
    };
    s.backstop.arm(&a, 1_900_000_000_000).await.unwrap();
    s.backstop.arm(&a, 1_900_000_600_000).await.unwrap();
    assert_eq!(s.schedules().await, 1);
    let got = s
        .scheduler
        .get_schedule()
        .name(s.backstop.schedule_name(&a))
        .group_name("portcullis")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.schedule_expression(),
        Some(at_expression(1_900_000_600_000).as_str())
    );
    s.backstop.disarm(&a).await.unwrap();
    s.backstop.disarm(&a).await.unwrap();
    assert_eq!(s.schedules().await, 0);
    // Another person on the same account and permission set: another schedule.
    let b = Assignment {
        user_id: "https://idp|u-bob".into(),
        principal_id: Some("user-2".into()),
        ..a.clone()
    };
    assert_ne!(s.backstop.schedule_name(&a), s.backstop.schedule_name(&b));
}

/// The demo's simulated backstop behaves as Scheduler would: one schedule per live
/// assignment at its end plus the grace; if the portal is not there when it fires, the
/// assignment is deleted all the same (and the schedule with it); reconciliation repairs
/// a lost one; the normal revocation of a later grant removes its schedule.
async fn the_simulated_backstop_protects_the_demo(b: Backend) {
    use portcullis::provisioner::simulated::SimulatedBackstop;
    use portcullis::upkeep::reconcile::run as reconcile;
    let env = TestEnv::new(b).await;
    let backstop = Arc::new(SimulatedBackstop::new(env.store.clone(), env.clock.clone()));
    let w = env.worker().with_backstop(backstop.clone(), GRACE);
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "active"
    );
    let schedules = backstop.schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedules[0].fire_at,
        g.ends_at.millis() + GRACE.as_millis() as i64
    );
    assert_eq!(
        (
            schedules[0].account_id.as_str(),
            schedules[0].permission_set_arn.as_str()
        ),
        (g.account_id.as_str(), g.permission_set_arn.as_str())
    );
    // Not due yet: nothing happens.
    assert_eq!(backstop.fire_due().await.unwrap(), 0);
    assert!(env.assignment_exists(&g).await);

    // Lost, then found by reconciliation and set again.
    sqlx::query("DELETE FROM sim_schedule")
        .execute(&mut *env.conn().await)
        .await
        .unwrap();
    let upkeep = portcullis::config::Upkeep::default();
    let found = reconcile(
        &env.store,
        env.sim.as_ref(),
        Some(backstop.as_ref() as &dyn Backstop),
        &*env.clock,
        &upkeep,
        &env.wake,
    )
    .await
    .unwrap();
    assert_eq!(found.backstop.map(|b| b.repaired), Some(1));
    env.settle(&w).await;
    assert_eq!(backstop.schedules().await.unwrap().len(), 1);

    // The portal is down past the end and the grace: the schedule fires and the
    // assignment goes, with the schedule.
    env.set_time(g.ends_at.millis() + GRACE.as_millis() as i64);
    assert_eq!(backstop.fire_due().await.unwrap(), 1);
    assert!(!env.assignment_exists(&g).await);
    assert!(backstop.schedules().await.unwrap().is_empty());
    // The portal comes back: the grant ends as revoked, nothing is left.
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(backstop.schedules().await.unwrap().is_empty());

    // A normal lifecycle: the revocation removes the schedule, and says so.
    let rid = env.ask(&person("alice"), "sandbox-admin", "1h").await;
    env.settle(&w).await;
    let g = env.only_grant(&rid).await;
    assert_eq!(backstop.schedules().await.unwrap().len(), 1);
    env.set_time(g.ends_at.millis());
    env.settle(&w).await;
    assert_eq!(
        env.grant(&g.access_grant_id).await.status.as_str(),
        "revoked"
    );
    assert!(backstop.schedules().await.unwrap().is_empty());
    assert!(!env.audit_with("backstop.removed").await.is_empty());
    env.check_invariants().await;
}

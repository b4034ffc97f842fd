; A small ALFWorld problem written for this project's offline tests (not from the ALFWorld dataset).
; Same format as ALFWorld's initial_state.pddl files: ALFRED-style object ids (Type_bar_x_bar_y_bar_z, the
; "_bar_" etc. are how ALFWorld mangles "|", "-", "+" and "."), the domain's predicates, and the task type's goal
; from ALFWorld's goal library. tests/test_real_envs.py turns it into a playable game with alfworld-generate.
; Bedroom. Goal: look at a book under the desk lamp (hold the book, turn on the lamp).
; (In play: book 1 on bed 1, desklamp 1 on sidetable 1, cellphone 1 on desk 1, pen 1 in drawer 1 (closed),
; keychain 1 on shelf 1, alarmclock 1 on sidetable 2.)
(define (problem plan_trial_T0002)
    (:domain alfred)
    (:objects
        agent1 - agent
        BedType - rtype
        DeskType - rtype
        DrawerType - rtype
        ShelfType - rtype
        SideTableType - rtype
        GarbageCanType - rtype
        SinkBasinType - rtype
        MicrowaveType - rtype
        FridgeType - rtype
        BookType - otype
        DeskLampType - otype
        CellPhoneType - otype
        PenType - otype
        AlarmClockType - otype
        KeyChainType - otype
        KnifeType - otype
        ButterKnifeType - otype
        Book_bar__minus_01_dot_20_bar__plus_00_dot_55_bar__minus_00_dot_80 - object
        DeskLamp_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__plus_01_dot_90 - object
        CellPhone_bar__minus_00_dot_30_bar__plus_00_dot_75_bar__plus_01_dot_40 - object
        Pen_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 - object
        AlarmClock_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__minus_01_dot_90 - object
        KeyChain_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 - object
        Bed_bar__minus_01_dot_20_bar__plus_00_dot_00_bar__minus_00_dot_80 - receptacle
        Desk_bar__minus_00_dot_30_bar__plus_00_dot_00_bar__plus_01_dot_40 - receptacle
        Drawer_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 - receptacle
        Shelf_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 - receptacle
        SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__minus_01_dot_90 - receptacle
        SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__plus_01_dot_90 - receptacle
        GarbageCan_bar__minus_02_dot_00_bar__plus_00_dot_00_bar__plus_02_dot_10 - receptacle
        loc_bar_0_bar_0_bar_2_bar_30 - location
        loc_bar__minus_5_bar__minus_3_bar_3_bar_45 - location
        loc_bar__minus_1_bar_5_bar_0_bar_45 - location
        loc_bar_2_bar_5_bar_0_bar_60 - location
        loc_bar_8_bar_0_bar_1_bar_30 - location
        loc_bar_6_bar__minus_7_bar_2_bar_45 - location
        loc_bar_6_bar_7_bar_0_bar_45 - location
        loc_bar__minus_7_bar_8_bar_3_bar_60 - location
    )
    (:init
        (atLocation agent1 loc_bar_0_bar_0_bar_2_bar_30)
        (receptacleType Bed_bar__minus_01_dot_20_bar__plus_00_dot_00_bar__minus_00_dot_80 BedType)
        (receptacleType Desk_bar__minus_00_dot_30_bar__plus_00_dot_00_bar__plus_01_dot_40 DeskType)
        (receptacleType Drawer_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 DrawerType)
        (receptacleType Shelf_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 ShelfType)
        (receptacleType SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__minus_01_dot_90 SideTableType)
        (receptacleType SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__plus_01_dot_90 SideTableType)
        (receptacleType GarbageCan_bar__minus_02_dot_00_bar__plus_00_dot_00_bar__plus_02_dot_10 GarbageCanType)
        (receptacleAtLocation Bed_bar__minus_01_dot_20_bar__plus_00_dot_00_bar__minus_00_dot_80 loc_bar__minus_5_bar__minus_3_bar_3_bar_45)
        (receptacleAtLocation Desk_bar__minus_00_dot_30_bar__plus_00_dot_00_bar__plus_01_dot_40 loc_bar__minus_1_bar_5_bar_0_bar_45)
        (receptacleAtLocation Drawer_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 loc_bar_2_bar_5_bar_0_bar_60)
        (receptacleAtLocation Shelf_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 loc_bar_8_bar_0_bar_1_bar_30)
        (receptacleAtLocation SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__minus_01_dot_90 loc_bar_6_bar__minus_7_bar_2_bar_45)
        (receptacleAtLocation SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__plus_01_dot_90 loc_bar_6_bar_7_bar_0_bar_45)
        (receptacleAtLocation GarbageCan_bar__minus_02_dot_00_bar__plus_00_dot_00_bar__plus_02_dot_10 loc_bar__minus_7_bar_8_bar_3_bar_60)
        (openable Drawer_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50)
        (objectType Book_bar__minus_01_dot_20_bar__plus_00_dot_55_bar__minus_00_dot_80 BookType)
        (objectType DeskLamp_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__plus_01_dot_90 DeskLampType)
        (objectType CellPhone_bar__minus_00_dot_30_bar__plus_00_dot_75_bar__plus_01_dot_40 CellPhoneType)
        (objectType Pen_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 PenType)
        (objectType AlarmClock_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__minus_01_dot_90 AlarmClockType)
        (objectType KeyChain_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 KeyChainType)
        (pickupable Book_bar__minus_01_dot_20_bar__plus_00_dot_55_bar__minus_00_dot_80)
        (pickupable CellPhone_bar__minus_00_dot_30_bar__plus_00_dot_75_bar__plus_01_dot_40)
        (pickupable Pen_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50)
        (pickupable AlarmClock_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__minus_01_dot_90)
        (pickupable KeyChain_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00)
        (toggleable DeskLamp_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__plus_01_dot_90)
        (inReceptacle Book_bar__minus_01_dot_20_bar__plus_00_dot_55_bar__minus_00_dot_80 Bed_bar__minus_01_dot_20_bar__plus_00_dot_00_bar__minus_00_dot_80)
        (inReceptacle DeskLamp_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__plus_01_dot_90 SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__plus_01_dot_90)
        (inReceptacle CellPhone_bar__minus_00_dot_30_bar__plus_00_dot_75_bar__plus_01_dot_40 Desk_bar__minus_00_dot_30_bar__plus_00_dot_00_bar__plus_01_dot_40)
        (inReceptacle Pen_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 Drawer_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50)
        (inReceptacle AlarmClock_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__minus_01_dot_90 SideTable_bar__plus_01_dot_60_bar__plus_00_dot_00_bar__minus_01_dot_90)
        (inReceptacle KeyChain_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 Shelf_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00)
        (objectAtLocation Book_bar__minus_01_dot_20_bar__plus_00_dot_55_bar__minus_00_dot_80 loc_bar__minus_5_bar__minus_3_bar_3_bar_45)
        (objectAtLocation DeskLamp_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__plus_01_dot_90 loc_bar_6_bar_7_bar_0_bar_45)
        (objectAtLocation CellPhone_bar__minus_00_dot_30_bar__plus_00_dot_75_bar__plus_01_dot_40 loc_bar__minus_1_bar_5_bar_0_bar_45)
        (objectAtLocation Pen_bar__plus_00_dot_40_bar__plus_00_dot_20_bar__plus_01_dot_50 loc_bar_2_bar_5_bar_0_bar_60)
        (objectAtLocation AlarmClock_bar__plus_01_dot_60_bar__plus_00_dot_70_bar__minus_01_dot_90 loc_bar_6_bar__minus_7_bar_2_bar_45)
        (objectAtLocation KeyChain_bar__plus_02_dot_30_bar__plus_01_dot_10_bar__plus_00_dot_00 loc_bar_8_bar_0_bar_1_bar_30)
        (canContain BedType BookType)
        (canContain BedType CellPhoneType)
        (canContain DeskType BookType)
        (canContain DeskType CellPhoneType)
        (canContain DeskType PenType)
        (canContain DeskType AlarmClockType)
        (canContain DeskType KeyChainType)
        (canContain DrawerType BookType)
        (canContain DrawerType CellPhoneType)
        (canContain DrawerType PenType)
        (canContain DrawerType KeyChainType)
        (canContain ShelfType BookType)
        (canContain ShelfType CellPhoneType)
        (canContain ShelfType PenType)
        (canContain ShelfType AlarmClockType)
        (canContain ShelfType KeyChainType)
        (canContain SideTableType BookType)
        (canContain SideTableType CellPhoneType)
        (canContain SideTableType PenType)
        (canContain SideTableType AlarmClockType)
        (canContain SideTableType KeyChainType)
        (canContain GarbageCanType PenType)
    )
    (:goal
        (and
            (exists (?ot - object ?r - receptacle ?a - agent ?l - location)
                (and
                    (objectType ?ot DeskLampType)
                    (toggleable ?ot)
                    (isToggled ?ot)
                    (receptacleAtLocation ?r ?l)
                    (atLocation ?a ?l)
                    (inReceptacle ?ot ?r)
                )
            )
            (exists (?o - object ?a - agent)
                (and
                    (objectType ?o BookType)
                    (holds ?a ?o)
                )
            )
        )
    )
)
